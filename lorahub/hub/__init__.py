"""lorahub.hub: the only module that talks to the Hugging Face Hub (push and pull adapters;
the use cases that read and record them in the registry are lorahub.app.hub's push_adapter and
pull_adapter).

huggingface_hub is imported inside the functions, so importing lorahub.hub stays cheap and
HF_ENDPOINT / HF_HUB_* settings are read when a command runs.
"""

from lorahub.hub.card import HubFile
from lorahub.hub.client import split_repo_revision
from lorahub.hub.push import PushResult

__all__ = ["HubFile", "PushResult", "split_repo_revision"]

"""lorahub.hub: the only module that talks to the Hugging Face Hub (push and pull adapters;
the pull use case that registers the download is lorahub.app.hub.pull_adapter).

huggingface_hub is imported inside the functions, so importing lorahub.hub stays cheap and
HF_ENDPOINT / HF_HUB_* settings are read when a command runs.
"""

from lorahub.hub.card import HubFile
from lorahub.hub.client import split_repo_revision
from lorahub.hub.push import PushResult, push_adapter

__all__ = ["HubFile", "PushResult", "push_adapter", "split_repo_revision"]

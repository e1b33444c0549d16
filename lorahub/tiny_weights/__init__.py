"""The pretrained weights of the embedded tiny bases (package data; see lorahub.pretrain)."""

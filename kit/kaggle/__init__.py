"""Everything that talks to Kaggle: the client and credentials, downloads, submissions and
scores, and notebooks (kernels) that run a recipe offline."""

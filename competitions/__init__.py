"""One module per Kaggle competition; its file name is its CLI name."""

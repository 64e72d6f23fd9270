"""A competition folder read into memory: its layout, archives, the image cache, the
submission contract, folds, augmentation and the loader that serves batches."""

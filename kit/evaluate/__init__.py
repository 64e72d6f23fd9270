"""Arrays in, numbers and plots out: the metrics Kaggle scores with and which way each is
better, predictions combined and scored, calibration, blends, interpretation plots."""

"""Training: networks and their weights, the Learner, the learning-rate finder, the SGDR
schedule and its callbacks, prediction with TTA, the time limit, several processes."""

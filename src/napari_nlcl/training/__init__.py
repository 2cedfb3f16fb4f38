"""Training: the trainer, recipes (one module per task), data streams and the quality monitor.

Nothing in :mod:`napari_nlcl.inference` or the task functions imports this
package; only training, fine-tuning and the model library do.
"""

"""Training: one generic loop (``loop``) composed with task objects, and what every task shares: the fold
request and split, config, checkpoints, device choice, DDP, batches, augmentation, losses, the sliding window,
the validation metrics (Dice/HD95, AUROC) and the pretrained-encoder checkpoint format. It imports no task
package: ``pipeline.train_fold`` maps task names to the packages (documentation/architecture.md)."""

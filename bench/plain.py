"""The baseline every bench measures against: tl_core's classifier trained by bare ``fit``.

Same model (`build_classifier`, freeze plan, compile) and same batches as tl_core's worker,
but none of its machinery: no metrics stream, checkpoints, drift, stop flag or caching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def plain_fit(config: Any, report: Any, callbacks: Sequence[Any] = ()) -> tuple[Any, int]:
    """Fit the classifier of `config` on `report` with ``model.fit``; return
    ``(history, number of blocks)``.

    Example:
        >>> history, blocks = plain_fit(config, load_dataset(config.dataset_id))  # doctest: +SKIP
    """
    from tl_core.data.dataset import make_batches, split_dataset, steps_per_epoch
    from tl_core.models.classifier import (
        apply_freeze_plan,
        build_classifier,
        compile_classifier,
        plan_trainable_blocks,
    )

    splits = split_dataset(report, val_fraction=config.val_fraction, seed=config.seed)
    classifier = build_classifier(config, splits.class_names)
    names = [b.name for b in classifier.blocks]
    trainable = plan_trainable_blocks(names, config.freeze, unfreeze_last=config.unfreeze_last)
    apply_freeze_plan(classifier, trainable, pretrained=not config.from_scratch)
    compile_classifier(classifier, config, learning_rate=config.learning_rate)
    common = {
        "class_names": splits.class_names,
        "image_size": classifier.image_size,
        "batch_size": config.batch_size,
    }
    train = make_batches(report, splits.train, shuffle_epochs=(0, config.epochs), **common)
    val = make_batches(report, splits.val, **common)
    history = classifier.model.fit(
        train,
        validation_data=val,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch(len(splits.train), config.batch_size),
        callbacks=list(callbacks),
        verbose=0,
    )
    return history, len(names)

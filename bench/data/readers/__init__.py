"""One reader per on-disk GT layout; each has ``find(root)`` and ``read(root, classes, problems, ann_ids, ...)``
returning a :class:`bench.data.dataset.GroundTruth` (see :mod:`bench.data.open`)."""

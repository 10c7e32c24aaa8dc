"""The run loop and run folders: engine (batches, devices, shards, resume), results, map cache, rescore."""

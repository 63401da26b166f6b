"""Evaluation of restoration models: the validation/test behaviour every model mixes in (:mod:`.mixin`) and the
benchmark evaluator behind ``python -m src.eval`` (:mod:`.evaluator`)."""

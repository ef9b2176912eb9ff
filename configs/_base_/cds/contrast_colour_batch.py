# The contrastive view's colour recipe (./contrast_colour.py) moved from the
# data loader to the batch: BatchPhotometric runs the same transforms on the
# collated view 2 on the model's device, with per-image parameters drawn from
# the same distributions and the same per-image result (tests/models/
# data_preprocessors/test_batch_photometric.py). Put this piece in place of
# ./contrast_colour.py in a config's _base_: `contrast_colour` becomes empty,
# so view 2's pipeline keeps its geometry only, and hand
# `contrast_colour_batch` to the model's preprocessor:
#   classifiers: model.data_preprocessor = dict(
#       type='MultiViewClsDataPreprocessor',
#       data_preprocessor=<the classifier's preprocessor config>,
#       view2_batch_augments=_base_.contrast_colour_batch)
#   detectors: model.data_preprocessor = dict(
#       type='MultiViewDetDataPreprocessor',
#       data_preprocessor=detector.data_preprocessor,
#       view2_batch_augments=_base_.contrast_colour_batch)
_base_ = ['./contrast_colour.py']

contrast_colour_batch = dict(
    type='BatchPhotometric', transforms=_base_.contrast_colour)
contrast_colour = []  # per sample: nothing left, the batch does it

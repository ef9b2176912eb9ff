"""A clear error for an empty data set (mmengine <= 0.10.7)."""
from .utils import once, version_in


def explain_empty_datasets() -> None:
    """Say "the data set is empty" instead of failing deep inside mmengine.

    mmengine 0.10.7's ``BaseDataset`` with an empty annotation list fails in
    ``_serialize_data`` with "need at least one array to concatenate" (or, with
    ``serialize_data=False``, a ZeroDivisionError in ``DefaultSampler``);
    neither names the data set.
    """
    if not version_in(
            'mmengine',
            max_version='0.10.7') or not once('explain_empty_datasets'):
        return
    from mmengine.dataset import BaseDataset
    serialize, full_init = BaseDataset._serialize_data, BaseDataset.full_init

    def check(dataset):
        if not dataset.data_list:
            raise ValueError(
                f'{type(dataset).__name__} is empty: 0 samples from '
                f'ann_file={dataset.ann_file!r} '
                f'(data_root={dataset.data_root!r}); '
                'check the annotation file, data_prefix and filter_cfg')

    def checked_serialize(self):
        check(self)
        return serialize(self)

    def checked_full_init(self):
        full_init(self)
        if not self.serialize_data:
            check(self)

    checked_serialize.__wrapped__ = serialize
    checked_full_init.__wrapped__ = full_init
    BaseDataset._serialize_data = checked_serialize
    BaseDataset.full_init = checked_full_init

# The shapes demo's tiny Faster R-CNN (image-level CDS on P2-P5, instance-level
# on P2) on real objects: the Fashion-MNIST mosaic, 1-4 items of 24-64 px on a
# 128 px canvas, 10 classes. Build it with
#   python -c "from cds_mm.datasets import make_fashion_mosaic_coco as m; \
#       m('/usr/share/datasets/fashion-mnist', 'data/fashion_mosaic')"
# (train items from the training IDX files, val items from t10k). Model
# selection on held-out train images: see benchmarks/det_accuracy_seeds.py.
_base_ = './faster-rcnn_r18-w16_fpn_cds_shapes.py'

model = dict(detector=dict(roi_head=dict(bbox_head=dict(num_classes=10))))

data_root = 'data/fashion_mosaic/'
metainfo = dict(classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                         'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

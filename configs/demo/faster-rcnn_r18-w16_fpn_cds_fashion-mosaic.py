# The shapes demo's tiny Faster R-CNN (image-level CDS on P2-P5, instance-level
# on P2) on real objects: the Fashion-MNIST mosaic, 1-4 items of 24-64 px on a
# 128 px canvas, 10 classes. Build it with
#   python -c "from cds_mm.datasets import make_fashion_mosaic_coco as m; \
#       m('/usr/share/datasets/fashion-mnist', 'data/fashion_mosaic')"
# (train items from the training IDX files, val items from t10k). Model
# selection on held-out train images: see benchmarks/det_accuracy_seeds.py.
_base_ = './faster-rcnn_r18-w16_fpn_cds_shapes.py'

data_root = '{{$CDS_DATA_ROOT:data/fashion_mosaic}}'
metainfo = dict(
    classes=('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
             'Shirt', 'Sneaker', 'Bag', 'Ankle boot'))
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + '/annotations/instances_val.json')
test_evaluator = val_evaluator

# The multi-class detection studies' recipe (benchmarks/det_accuracy_seeds.py,
# benchmarks/det_pretrained_backbone.py): the shapes demo's AdamW (lr 1e-3,
# wd 0.05, 50-iteration warm-up) at batch 8, 24 epochs with lr x0.1 at epoch
# 16, so that the last 8 epochs show whether val has levelled off.
model = dict(
    detector=dict(
        roi_head=dict(bbox_head=dict(num_classes=10)),
        train_cfg=dict(
            rpn_proposal=dict(nms_pre=500, max_per_img=300),
            rcnn=dict(sampler=dict(num=128)))))
train_cfg = dict(max_epochs=24, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=True, milestones=[16], gamma=0.1),
]

# The paper's CDS head on the 4 ResNet stages, last stage included (as the
# authors' code does): SepConv stacks, SupCon at temperature 0.07, weight 0.1.
cds_head = dict(
    type='CDSHead',
    taps=[
        'backbone.layer1', 'backbone.layer2', 'backbone.layer3',
        'backbone.layer4'
    ],
    loss_weight=0.1,
    projector=dict(type='SepConvProjector'),
    loss=dict(type='SupConLoss', temperature=0.07),
    use_labels=True)

# Stop a run at the first iteration with a NaN or infinite loss, naming the
# loss key(s) and the iteration, before that iteration's checkpoint is written
# (cds_mm's CheckFiniteLossHook). Every shipped config inherits this piece.
# It is a custom hook because default_hooks is already set by the upstream
# runtime bases, and two bases may not set the same key. A config that adds
# hooks keeps this one by extending the list:
#   custom_hooks = _base_.custom_hooks + [dict(type='EMAHook')]
# DataRootCheckHook warns when a child config changes only the top-level
# data_root. cds_mm.compat: the version-checked stack fixes our tools apply
# (torch>=2.6 loading of mmengine checkpoints, ...), for upstream tools too.
custom_imports = dict(
    imports=['cds_mm', 'cds_mm.compat'], allow_failed_imports=False)
custom_hooks = [
    dict(type='CheckFiniteLossHook'),
    dict(type='DataRootCheckHook')
]

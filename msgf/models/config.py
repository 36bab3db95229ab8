"""Everything needed to rebuild a GFNet, as plain values (the checkpoint stores `to_dict()`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class GFConfig:
    backbone: str
    num_classes: int
    glance_size: int
    patch_sizes: tuple[int, ...]  # candidate focus sizes, ascending and distinct
    T: int  # steps including the glance
    # "gru", "fc" (cascade of linear heads over concatenated features) or "max" (one head over the
    # glance feature and the elementwise maximum of the focus features: msgf.models.heads)
    classifier: str
    classifier_hidden: int = 1024  # GRU hidden size (unused by "fc")
    policy_channels: int = 32  # output channels of the policy's conv on the feature map
    # side of that conv's kernel (odd): 1 reads each cell alone, 3 also its neighbours, which
    # places a small object inside its cell better (msgf.models.heads.LocationPolicy)
    policy_kernel: int = 1
    policy_hidden: int = 256  # hidden size of the policy's GRU
    policy_head: str = "sigmoid"  # pi's location head: "sigmoid" (the paper's) or "spatial" (heads.py)
    # spatial head: score taken from a glance cell per unit of pi's weight on it at earlier
    # steps (inhibition of return); 0 lets pi look at the same cell again
    policy_inhibition: float = 0.0
    # spatial head: the inhibition also reaches cells within this many cells of a looked-at one
    policy_inhibition_radius: int = 0
    # spatial head: "expected" (the softmax's expected cell centre) or "argmax" (the likeliest cell)
    policy_selection: str = "expected"
    # stride of the encoder map pi reads (timm backbones): None for the last map, e.g. 16 for a
    # finer, earlier one where small objects are still visible (msgf.models.backbones)
    map_stride: int | None = None
    # f_G ends at that map (the layers after it are pruned; its pooled vector is that map's):
    # where the glance only has to say where to look, the rest of f_G is compute that pays for
    # nothing (EfficientNet-Lite0 at 256 px: 318M MACs to stride 16, 501M in all). Needs
    # map_stride and the "max" classifier, whose glance head takes the narrower vector.
    glance_to_map: bool = False
    location_std: float = 0.1  # std of the Gaussian the policy samples from in training
    # the side f_L sees for each patch size: the full-resolution patch is resized to it (empty:
    # the patch's own side). Zooming in gives a small object more of the encoder's pixels: an
    # ImageNet CNN's stem (stride 2) and its stride-8 stage blur the 8 px digits of a 20 px sign
    # (cpu-demo: signs under 25 px were read in 47% of the patches that held them, 35-45 px
    # ones in all). The step then costs the input side's MACs, not the patch's.
    patch_input_sizes: tuple[int, ...] = ()
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _require(isinstance(self.backbone, str) and self.backbone, "backbone", "a backbone name (msgf.models.backbones)")
        for name in ("num_classes", "glance_size", "T", "classifier_hidden", "policy_channels", "policy_hidden",
                     "policy_kernel"):
            value = getattr(self, name)
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, "a positive int")
        _require(self.num_classes >= 2, "num_classes", "at least 2")
        _require(self.policy_kernel % 2 == 1, "policy_kernel", "odd (1, 3, ...)")
        sizes = tuple(self.patch_sizes)
        _require(len(sizes) >= 1 and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes),
                 "patch_sizes", "a non-empty sequence of positive ints")
        _require(list(sizes) == sorted(set(sizes)), "patch_sizes", "ascending and distinct")
        _require(self.classifier in ("gru", "fc", "max"), "classifier", '"gru", "fc" or "max"')
        _require(self.policy_head in ("sigmoid", "spatial"), "policy_head", '"sigmoid" or "spatial"')
        _require(self.policy_selection in ("expected", "argmax")
                 and (self.policy_selection == "expected" or self.policy_head == "spatial"), "policy_selection",
                 "'expected' or 'argmax', and 'expected' unless policy_head is 'spatial'")
        _require(isinstance(self.policy_inhibition_radius, int) and self.policy_inhibition_radius >= 0
                 and (self.policy_inhibition_radius == 0 or self.policy_head == "spatial"),
                 "policy_inhibition_radius", "a non-negative int, and 0 unless policy_head is 'spatial'")
        _require(isinstance(self.location_std, float) and self.location_std > 0, "location_std", "a positive float")
        _require(isinstance(self.policy_inhibition, (int, float)) and self.policy_inhibition >= 0
                 and (self.policy_inhibition == 0 or self.policy_head == "spatial"), "policy_inhibition",
                 "a non-negative number, and 0 unless policy_head is 'spatial'")
        _require(self.map_stride is None or (isinstance(self.map_stride, int) and not isinstance(self.map_stride, bool)
                                             and self.map_stride >= 1), "map_stride", "None or a positive int")
        _require(isinstance(self.glance_to_map, bool) and (not self.glance_to_map or (
            self.map_stride is not None and self.classifier == "max")), "glance_to_map",
            "a bool, and False unless map_stride is set and the classifier is 'max'")
        _require(len(self.mean) == len(self.std) and all(s > 0 for s in self.std), "std",
                 "positive and as long as mean")
        _require(not self.class_names or len(self.class_names) == self.num_classes, "class_names",
                 f"empty or {self.num_classes} names")
        inputs = tuple(self.patch_input_sizes)
        _require(not inputs or (len(inputs) == len(sizes) and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in inputs)),
            "patch_input_sizes", f"empty or {len(sizes)} positive ints, one per patch size")
        object.__setattr__(self, "patch_sizes", sizes)
        for name in ("patch_input_sizes", "mean", "std", "class_names"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def num_sizes(self) -> int:
        return len(self.patch_sizes)

    @property
    def focus_input_sizes(self) -> tuple[int, ...]:
        """The side f_L sees for each patch size (patch_input_sizes, or the patch sizes)."""
        return self.patch_input_sizes or self.patch_sizes

    def input_side(self, patch_size: int) -> int:
        """The side f_L sees for a patch of `patch_size` (one of patch_sizes)."""
        return self.focus_input_sizes[self.patch_sizes.index(patch_size)]

    def to_dict(self) -> dict:
        """Plain dict (lists instead of tuples): JSON- and weights_only-safe."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "GFConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def sorted_sizes(patch_sizes, patch_input_sizes=()) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(patch sizes ascending, their input sides in the same order): each input side stays with
    the patch size it was given for. Empty input sides stay empty."""
    sizes, inputs = tuple(int(s) for s in patch_sizes), tuple(int(s) for s in patch_input_sizes)
    if not inputs:
        return tuple(sorted(sizes)), ()
    if len(inputs) != len(sizes) or min(inputs) < 1:
        raise ValueError(f"patch_input_sizes must give one positive side per patch size {sizes}, got {inputs}")
    pairs = sorted(zip(sizes, inputs))
    return tuple(s for s, _ in pairs), tuple(i for _, i in pairs)


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {what}")

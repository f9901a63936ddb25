"""What preprocessing a model expects, as data: ``PreprocessSpec`` (stored in every
checkpoint bundle) and ``PreprocessOverride`` (per-request changes). Free of torch, so the
torch-free ONNX scorer reads bundles and requests with it; the normalisation itself, and
what each field means, is ``lenscal.preprocess``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Annulus radii in pixels, (inner, outer), by model generation.
ANNULUS_GEN1_4: tuple[float, float] = (20.0, 32.0)
ANNULUS_GEN5: tuple[float, float] = (32.5, 45.0)
#: The team's default crop (their STAMP_SIZE) when a config asks for a crop without a size.
TEAM_CROP_SIZE = 64
#: Rings of the residual radial profile: 0..31 px (the team's r_max).
PROFILE_RINGS = 32
#: Normalisation names (lenscal.preprocess.PREPROCESSORS holds one function for each).
KINDS = ("raw_robust", "residual_radial_profile")


class PreprocessSpec(BaseModel):
    """How raw nanomaggy cutouts become network input. Stored in every checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field("raw_robust", description="normalisation name, one of KINDS")
    annulus_r_in: float = Field(
        ANNULUS_GEN1_4[0], ge=0.0, allow_inf_nan=False, description="annulus inner radius, px (inclusive)"
    )
    annulus_r_out: float = Field(
        ANNULUS_GEN1_4[1], gt=0.0, allow_inf_nan=False, description="annulus outer radius, px (exclusive)"
    )
    clip_range: float = Field(
        10.0, gt=0.0, allow_inf_nan=False, description="clip to +-clip_range after normalising (MAD units)"
    )
    mad_floor: float = Field(
        1e-12, gt=0.0, allow_inf_nan=False, description="smallest MAD divided by, nmgy (blank bands)"
    )
    crop_size: int | None = Field(
        None, ge=8, description="keep the central crop_size x crop_size px first; None: the whole cutout"
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown preprocessing kind {value!r}; known: {sorted(KINDS)}")
        return value

    @model_validator(mode="after")
    def _annulus_order(self) -> PreprocessSpec:
        if self.annulus_r_out <= self.annulus_r_in:
            raise ValueError(
                f"annulus_r_out ({self.annulus_r_out}) must exceed annulus_r_in ({self.annulus_r_in})"
            )
        return self

    @classmethod
    def for_annulus(cls, annulus: tuple[float, float], **kwargs: Any) -> PreprocessSpec:
        return cls(annulus_r_in=annulus[0], annulus_r_out=annulus[1], **kwargs)

    def with_overrides(self, **overrides: Any) -> PreprocessSpec:
        """A validated copy with some fields replaced (None values are ignored)."""
        data = self.model_dump()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return PreprocessSpec.model_validate(data)

    def output_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """(C, H, W) of the network input for raw cutouts of ``shape``."""
        if self.crop_size is None:
            return shape
        return (shape[0], self.crop_size, self.crop_size)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        return cls.model_validate_json(text)


class PreprocessOverride(BaseModel):
    """Per-request changes to a model's spec (diagnostics: clip-range sweeps, mismatched
    annulus). Unset fields keep the model's value; the result is validated as a spec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clip_range: float | None = Field(None, description="MAD units")
    annulus_r_in: float | None = Field(None, description="px")
    annulus_r_out: float | None = Field(None, description="px")

    def apply(self, spec: PreprocessSpec) -> PreprocessSpec:
        return spec.with_overrides(**self.model_dump(exclude_none=True))

    def is_empty(self) -> bool:
        return not self.model_dump(exclude_none=True)

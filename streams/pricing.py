"""The pricing rule the fold applies; it lives in schemas/pricing.py, shared with the query layer."""

from schemas.pricing import NANO_PER_USD, ModelPrice, PricedCall, PriceBook, SpanPrice, normalize_model_id

__all__ = ["NANO_PER_USD", "ModelPrice", "PricedCall", "PriceBook", "SpanPrice", "normalize_model_id"]

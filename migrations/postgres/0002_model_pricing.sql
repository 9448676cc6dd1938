-- List prices per model, in USD per million tokens, each valid over [effective_from, effective_to).
-- A span is priced by the row effective at its own start time (streams/pricing.py), so a price
-- change is a new row plus effective_to on the old one, never an UPDATE of the numbers: spans
-- already priced, and spans replayed from the topic, keep the price they were incurred at.
--
-- model_id is stored the way streams/pricing.py normalize_model_id writes it: lowercase, no
-- provider prefix ("openai/", "anthropic."), no dated snapshot suffix. A dated id a producer
-- sends ("claude-sonnet-4-5-20250929") is matched to the longest stored id it starts with.
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE model_pricing (
    id                           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    provider                     text NOT NULL,
    model_id                     text NOT NULL CHECK (model_id ~ '^[a-z0-9][a-z0-9._-]*$'),
    display_name                 text NOT NULL,
    input_usd_per_mtok           numeric(12, 6) NOT NULL CHECK (input_usd_per_mtok >= 0),
    output_usd_per_mtok          numeric(12, 6) NOT NULL CHECK (output_usd_per_mtok >= 0),
    cache_read_usd_per_mtok      numeric(12, 6) NOT NULL CHECK (cache_read_usd_per_mtok >= 0),
    cache_creation_usd_per_mtok  numeric(12, 6) NOT NULL CHECK (cache_creation_usd_per_mtok >= 0),
    thinking_usd_per_mtok        numeric(12, 6) NOT NULL CHECK (thinking_usd_per_mtok >= 0),
    effective_from               timestamptz NOT NULL,
    effective_to                 timestamptz,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_pricing_effective_range CHECK (effective_to IS NULL OR effective_to > effective_from),
    -- One price per model at any instant. Keyed by model_id alone, not provider: the id a span
    -- carries loses its provider prefix before matching, so two providers' rows for one id
    -- would be ambiguous.
    CONSTRAINT model_pricing_no_overlap EXCLUDE USING gist (
        model_id WITH =,
        tstzrange(effective_from, effective_to, '[)') WITH &&
    )
);

-- Seed: public list prices as shown on the providers' pricing pages (anthropic.com/pricing,
-- openai.com/api/pricing, ai.google.dev/gemini-api/docs/pricing), standard tier, no batch
-- discount. They were written down from those pages and MUST BE CHECKED against them before
-- costs are shown to anyone; prices change, and some rows below are flagged as uncertain.
--
-- Rules used where a provider has no separate price for a token kind:
--   thinking = output price (all three providers bill reasoning tokens as output);
--   cache_creation = input price for OpenAI and Google (no write surcharge; Google's explicit
--   cache storage is billed per hour, which a span cannot carry);
--   cache_read = input price where the model has no cached-input discount (o3-pro).
-- Not expressible here, so not applied: Anthropic's 1-hour cache writes (2x input; the 5-minute
-- price, 1.25x input, is used), long-context tiers (Claude Sonnet 4/4.5 above 200k input tokens,
-- Gemini 2.5 Pro above 200k), Gemini audio input prices, batch and priority tiers.
--
-- effective_from is 2025-01-01 for models released before it, else the release date (00:00 UTC).
INSERT INTO model_pricing (provider, model_id, display_name, input_usd_per_mtok, output_usd_per_mtok,
                           cache_read_usd_per_mtok, cache_creation_usd_per_mtok, thinking_usd_per_mtok,
                           effective_from, effective_to)
VALUES
    -- Anthropic: cache read 0.1x input, cache write (5 minutes) 1.25x input.
    ('anthropic', 'claude-opus-4-5',   'Claude Opus 4.5',    5.00, 25.00, 0.50,  6.25, 25.00, '2025-11-24T00:00:00Z', NULL),
    ('anthropic', 'claude-opus-4-1',   'Claude Opus 4.1',   15.00, 75.00, 1.50, 18.75, 75.00, '2025-08-05T00:00:00Z', NULL),
    ('anthropic', 'claude-opus-4',     'Claude Opus 4',     15.00, 75.00, 1.50, 18.75, 75.00, '2025-05-22T00:00:00Z', NULL),
    ('anthropic', 'claude-sonnet-4-5', 'Claude Sonnet 4.5',  3.00, 15.00, 0.30,  3.75, 15.00, '2025-09-29T00:00:00Z', NULL),
    ('anthropic', 'claude-sonnet-4',   'Claude Sonnet 4',    3.00, 15.00, 0.30,  3.75, 15.00, '2025-05-22T00:00:00Z', NULL),
    ('anthropic', 'claude-3-7-sonnet', 'Claude Sonnet 3.7',  3.00, 15.00, 0.30,  3.75, 15.00, '2025-02-24T00:00:00Z', NULL),
    ('anthropic', 'claude-haiku-4-5',  'Claude Haiku 4.5',   1.00,  5.00, 0.10,  1.25,  5.00, '2025-10-15T00:00:00Z', NULL),
    ('anthropic', 'claude-3-5-haiku',  'Claude Haiku 3.5',   0.80,  4.00, 0.08,  1.00,  4.00, '2025-01-01T00:00:00Z', NULL),

    -- OpenAI: cache_read is the "cached input" price. Siblings (gpt-4.1-nano, gpt-5-nano, o3-mini,
    -- o3-pro) are listed so that prefix matching does not price them as gpt-4.1, gpt-5 or o3.
    ('openai', 'gpt-4o',       'GPT-4o',        2.50, 10.00, 1.25,   2.50, 10.00, '2025-01-01T00:00:00Z', NULL),
    ('openai', 'gpt-4o-mini',  'GPT-4o mini',   0.15,  0.60, 0.075,  0.15,  0.60, '2025-01-01T00:00:00Z', NULL),
    ('openai', 'gpt-4.1',      'GPT-4.1',       2.00,  8.00, 0.50,   2.00,  8.00, '2025-04-14T00:00:00Z', NULL),
    ('openai', 'gpt-4.1-mini', 'GPT-4.1 mini',  0.40,  1.60, 0.10,   0.40,  1.60, '2025-04-14T00:00:00Z', NULL),
    ('openai', 'gpt-4.1-nano', 'GPT-4.1 nano',  0.10,  0.40, 0.025,  0.10,  0.40, '2025-04-14T00:00:00Z', NULL),
    -- o3 launched at 10/40 and was cut by 80% on 2025-06-10 (the exact hour is not published;
    -- midnight UTC is an approximation).
    ('openai', 'o3',           'o3',           10.00, 40.00, 2.50,  10.00, 40.00, '2025-04-16T00:00:00Z', '2025-06-10T00:00:00Z'),
    ('openai', 'o3',           'o3',            2.00,  8.00, 0.50,   2.00,  8.00, '2025-06-10T00:00:00Z', NULL),
    ('openai', 'o3-mini',      'o3-mini',       1.10,  4.40, 0.55,   1.10,  4.40, '2025-01-31T00:00:00Z', NULL),
    ('openai', 'o3-pro',       'o3-pro',       20.00, 80.00, 20.00, 20.00, 80.00, '2025-06-10T00:00:00Z', NULL),
    ('openai', 'o4-mini',      'o4-mini',       1.10,  4.40, 0.275,  1.10,  4.40, '2025-04-16T00:00:00Z', NULL),
    ('openai', 'gpt-5',        'GPT-5',         1.25, 10.00, 0.125,  1.25, 10.00, '2025-08-07T00:00:00Z', NULL),
    ('openai', 'gpt-5-mini',   'GPT-5 mini',    0.25,  2.00, 0.025,  0.25,  2.00, '2025-08-07T00:00:00Z', NULL),
    ('openai', 'gpt-5-nano',   'GPT-5 nano',    0.05,  0.40, 0.005,  0.05,  0.40, '2025-08-07T00:00:00Z', NULL),

    -- Google (Gemini API, paid tier, text input, prompts up to 200k tokens). Output prices include
    -- thinking. UNCERTAIN: the context-caching prices (cache_read) were listed at 25% of input when
    -- these models became generally available and may since have been lowered; check them.
    ('google', 'gemini-2.5-pro',        'Gemini 2.5 Pro',        1.25, 10.00, 0.31,  1.25, 10.00, '2025-06-17T00:00:00Z', NULL),
    ('google', 'gemini-2.5-flash',      'Gemini 2.5 Flash',      0.30,  2.50, 0.075, 0.30,  2.50, '2025-06-17T00:00:00Z', NULL),
    ('google', 'gemini-2.5-flash-lite', 'Gemini 2.5 Flash-Lite', 0.10,  0.40, 0.025, 0.10,  0.40, '2025-07-22T00:00:00Z', NULL);

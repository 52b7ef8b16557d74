//! Cost of model usage from a configurable price table (US dollars per million tokens). Cache
//! writes cost 1.25× input and cache reads 0.1× input unless a row says otherwise. An unknown
//! model has no price: its cost is reported as unknown, never guessed.

use std::collections::BTreeMap;

use crate::run_event::Usage;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    pub cache_write: f64,
    pub cache_read: f64,
}

impl ModelPrice {
    /// A price from input and output rates, with Anthropic's cache multipliers.
    pub fn new(input: f64, output: f64) -> Self {
        ModelPrice {
            input,
            output,
            cache_write: input * 1.25,
            cache_read: input * 0.1,
        }
    }

    pub fn cost(&self, u: &Usage) -> f64 {
        (u.input_tokens as f64 * self.input
            + u.output_tokens as f64 * self.output
            + u.cache_creation_input_tokens as f64 * self.cache_write
            + u.cache_read_input_tokens as f64 * self.cache_read)
            / 1_000_000.0
    }
}

/// Prices by model id prefix; the longest matching prefix wins, so `claude-sonnet-4-5-20250929`
/// finds `claude-sonnet-4-5`.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, ModelPrice>,
}

impl Default for PriceTable {
    fn default() -> Self {
        let mut t = PriceTable::empty();
        for (m, i, o) in [
            ("claude-sonnet-4-5", 3.0, 15.0),
            ("claude-sonnet-4", 3.0, 15.0),
            ("claude-3-7-sonnet", 3.0, 15.0),
            ("claude-opus-4-5", 5.0, 25.0),
            ("claude-opus-4-1", 15.0, 75.0),
            ("claude-opus-4-0", 15.0, 75.0),
            ("claude-opus-4", 15.0, 75.0),
            ("claude-haiku-4-5", 1.0, 5.0),
            ("claude-3-5-haiku", 0.8, 4.0),
        ] {
            t.set(m, ModelPrice::new(i, o));
        }
        t
    }
}

impl PriceTable {
    pub fn empty() -> Self {
        PriceTable {
            prices: BTreeMap::new(),
        }
    }

    pub fn set(&mut self, model_prefix: &str, price: ModelPrice) {
        self.prices.insert(model_prefix.to_owned(), price);
    }

    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.prices
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, p)| p)
    }

    /// The cost of `usage` on `model`, or `None` (with a warning) for a model without a price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        match self.price(model) {
            Some(p) => Some(p.cost(usage)),
            None => {
                tracing::warn!(
                    model,
                    "no price for this model; its cost is reported as unknown"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sonnet_prices_all_four_token_kinds() {
        let u = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_creation_input_tokens: 1_000_000,
            cache_read_input_tokens: 1_000_000,
        };
        let c = PriceTable::default()
            .cost("claude-sonnet-4-5-20250929", &u)
            .unwrap();
        assert!((c - (3.0 + 15.0 + 3.75 + 0.3)).abs() < 1e-9, "{c}");
    }

    #[test]
    fn longest_prefix_wins_and_unknown_models_have_no_cost() {
        let t = PriceTable::default();
        assert_eq!(t.price("claude-opus-4-5-20251101").unwrap().input, 5.0);
        assert_eq!(t.price("claude-opus-4-1-20250805").unwrap().input, 15.0);
        assert_eq!(t.price("claude-haiku-4-5").unwrap().output, 5.0);
        assert_eq!(t.cost("llama-3-70b", &Usage::default()), None);
    }
}

//! ETF subset (placeholder)

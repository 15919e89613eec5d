//! `payment`: the order saga's step `process_payment`. Captures `total_amount` with the
//! `payments` service and adds `{"payment_id"}` to the context; compensation refunds it.

include!("payment.rs");

/// What an order of `total` is charged: its total.
fn charged(total: f64) -> f64 {
    total
}

export_step!(ProcessPayment);

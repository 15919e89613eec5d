//! `payment-surcharge`: the example `payment` plugin (its code, `include!`d) with the kind
//! of change a canary gate must stop: it charges 10% over the order's total.

include!("../../../examples/payment/src/payment.rs");

/// What an order of `total` is charged: 10% more than its total.
fn charged(total: f64) -> f64 {
    total * 1.1
}

export_step!(ProcessPayment);

//! Caught panics: job code (create_tasks, handlers, finalize) runs under `catch_unwind`, and its
//! panic becomes a recorded failure with the panic's text.

/// The text of a caught panic payload.
pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}

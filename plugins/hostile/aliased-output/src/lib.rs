//! Tries to make the host allocate without bound, and to forge log lines, by event name:
//! - `alias`: 4,000 deliveries whose payloads all point at the same 1 MiB of guest
//!   memory (4 GiB for a host that copies before it counts; the guest holds 1 MiB);
//! - `alias-redactions`: one small delivery with 200,000 redaction pointers that all
//!   point at the same 1 KiB;
//! - `huge-error`: `Err` with a 6 MiB message that spans several lines;
//! - `long-error`: `Err` with a 100 KiB message that spans several lines;
//! - `log-injection`: a log line with a newline and a forged second line;
//! - anything else: delivered as it came.
//!
//! Aliased strings would be freed many times over by the post-return function, so this
//! guest's allocator never frees.
wit_bindgen::generate!({ path: "../../../wit", world: "event-policy" });

use hostd::policy::log::{log, Level};
use hostd::policy::types::Delivery;
use std::alloc::{GlobalAlloc, Layout, System};

struct NeverFree;

unsafe impl GlobalAlloc for NeverFree {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOCATOR: NeverFree = NeverFree;

/// `n` strings that all point at the bytes of `text`, which is leaked.
fn aliases(text: String, n: usize) -> Vec<String> {
    let text = text.leak();
    let (ptr, len) = (text.as_mut_ptr(), text.len());
    // SAFETY: the buffer is leaked and never freed (see `NeverFree`); the strings are
    // only read, by the host, after `evaluate` returns.
    (0..n).map(|_| unsafe { String::from_raw_parts(ptr, len, len) }).collect()
}

struct Policy;

impl Guest for Policy {
    fn configure(_: String) -> Result<(), String> {
        Ok(())
    }
    fn evaluate(e: Event) -> Result<Decision, String> {
        match e.name.as_str() {
            "alias" => {
                let payloads = aliases(format!("\"{}\"", "x".repeat((1 << 20) - 2)), 4000);
                Ok(Decision::Deliver(
                    payloads
                        .into_iter()
                        .map(|payload| Delivery { route: "default".into(), payload, key: None, redactions: vec![] })
                        .collect(),
                ))
            }
            "alias-redactions" => {
                let redactions = aliases(format!("/{}", "r".repeat(1023)), 200_000);
                Ok(Decision::Deliver(vec![Delivery {
                    route: "default".into(),
                    payload: "{}".into(),
                    key: None,
                    redactions,
                }]))
            }
            "huge-error" => Err(format!("first line\nERROR forged line\n{}", "e".repeat(6 << 20))),
            "long-error" => Err(format!("first line\nERROR forged line\n{}", "e".repeat(100 << 10))),
            "log-injection" => {
                log(Level::Warn, "innocent\nERROR tenant=good forged by the evil tenant");
                Ok(Decision::Drop("logged".into()))
            }
            _ => Ok(Decision::Deliver(vec![Delivery {
                route: "default".into(),
                payload: e.data,
                key: None,
                redactions: vec![],
            }])),
        }
    }
}

export!(Policy);

//! A component that exports `configure` but no `evaluate`: hosts must refuse it.

wit_bindgen::generate!({
    inline: "
        package hostd:wrong@0.1.0;
        world half-policy {
            export configure: func(config: string) -> result<_, string>;
        }
    ",
    world: "half-policy",
});

struct Policy;

impl Guest for Policy {
    fn configure(_: String) -> Result<(), String> {
        Ok(())
    }
}

export!(Policy);

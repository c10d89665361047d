// The broker under fuzzing, built once per process (shared by the targets through `#[path]`).

use std::sync::OnceLock;

use lienthong_broker::fuzzing::Target;
use tokio::runtime::Runtime;

pub fn target() -> &'static Target {
    // The runtime stays beside the target: the directory's pool lives on it.
    static TARGET: OnceLock<(Runtime, Target)> = OnceLock::new();
    &TARGET
        .get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let target = runtime.block_on(Target::new());
            (runtime, target)
        })
        .1
}

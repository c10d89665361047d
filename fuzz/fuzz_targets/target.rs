// The broker under fuzzing, built once per process (shared by the targets through `#[path]`).

use std::sync::OnceLock;

use lienthong_broker::fuzzing::Target;

pub fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(Target::new)
}

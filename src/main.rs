//! The `datamesh` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    datamesh::cli::main()
}

fn main() -> std::process::ExitCode {
    meshery_operator::cli::main()
}

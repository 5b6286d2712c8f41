fn main() -> std::process::ExitCode {
    makoto_cli::main()
}

"""The command-line shell: parses, calls the library, prints, maps errors to exit codes."""

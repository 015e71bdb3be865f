"""The one exception a stage raises for bad user input: the CLI turns it into exit code 2 and one line."""


class UserError(Exception):
    """Bad input from the user (a path, a spec, an option value). The message is the whole answer:
    it names the file or option, what is wrong, and what would be valid."""

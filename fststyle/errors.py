"""One exception type for mistakes the user can fix: the CLIs print its message, not a traceback."""


class UserError(Exception):
    pass

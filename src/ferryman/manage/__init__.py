"""What a caller may do to the gateway's objects, in one place: the management API's
routes and the console's pages both call these, so they can never disagree."""

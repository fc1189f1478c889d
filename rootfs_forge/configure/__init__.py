"""What maintainer scripts would have done: the effects, the dpkg database, forge's manifest."""

/* No declarations: the target's only content is a constructor that runs before main. */

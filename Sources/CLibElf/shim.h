#ifndef CLIBELF_SHIM_H
#define CLIBELF_SHIM_H
// Debian's elfutils libelf (libelf-dev). Only Sources/Remoteproc/ELFFile.swift imports this module.
#include <libelf.h>
#include <gelf.h>
#endif

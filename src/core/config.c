#include "core/config.h"
/* Loader for server and routes: written next. */

//! Hardened Docker containers through bollard: the repository copied in and out through the
//! archive API, one exec per command, limits, and a reaper for containers left behind.

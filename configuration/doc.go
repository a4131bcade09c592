// Package configuration loads and validates the gateway's settings.
//
// The file format of the original Dynode Broadcaster (Java .properties: key=value,
// '#' comments) loads unchanged, with the same keys and defaults; YAML, TOML and JSON
// files load by extension. Every key can be overridden by an environment variable
// DYNODE_<KEY> and by a command-line flag --<key>. Validation reports every problem at
// once, each naming its key (and its line in the file where known). This package
// knows no sockets and starts no goroutines.
package configuration

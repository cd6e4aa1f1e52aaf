// Package docs owns the user documentation of Sluice: the Markdown files in
// this directory describe the wire contracts as the code implements them
// (Service Management API, configuration file and command line, usage event,
// query API, admin API; README.md is the index). The package has no code;
// its tests keep the repository's documentation self-contained:
//
//   - every relative link in every Markdown file of the repository (the
//     top-level README.md, this directory, package READMEs) names a file or
//     directory that exists inside the repository, and every #anchor names a
//     heading of its target file;
//   - every error code the Service Management, query and admin APIs define
//     (and every denial reason) is listed in its document with its status;
//   - no file outside .ci/ refers to specification drafts kept beside the
//     repository (a "shared" directory next to it, or spec/*.md paths): a
//     user of the repository does not have them; docs/ is the reference.
package docs

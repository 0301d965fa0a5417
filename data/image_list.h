// image_list.h - the images a command or a deployment embeds, named the three ways users keep them:
//
//   a folder    every image below it, recursively (an image folder dataset root/<class>/<image>,
//               or a dataset root with train/ and val/, is such a folder), in torchvision's order
//               (data/image_folder.h: directories by path, files by name);
//   an image    that one file (a name with an image extension, data/image_folder.h);
//   a list      a text file with one image path per line; blank lines and lines starting with '#'
//               are ignored, surrounding spaces and a Windows '\r' trimmed; a relative path is taken
//               relative to the list's folder, so a list travels with its images.
//
// Paths are returned as they will be opened. A listed path that does not exist is kept: the caller
// reports it with the images that cannot be decoded, so one bad line never loses the rest.
#pragma once

#include <string>
#include <vector>

namespace engine::data {

// Throws engine::Error for a missing source, a folder without images, an empty list, or a file that
// is not text (a NUL byte: a binary file given by mistake).
std::vector<std::string> list_image_files(const std::string& source);

}  // namespace engine::data

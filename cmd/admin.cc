// `corral kubeconfig` prints the admin kubeconfig the server wrote;
// `corral token add` adds a bearer token for a user and role.
#include <fstream>
#include <iostream>

#include "api/auth.h"
#include "cmd/commands.h"

namespace corral::cmd {

namespace {

struct DataDirFlag {
  std::string dir = ".corral";
  CLI::Option* option = nullptr;
  std::string Resolve() const { return ResolveDataDir(dir, option && option->count() > 0); }
};

void AddDataDir(CLI::App* sub, DataDirFlag& f) {
  f.option = sub->add_option("--data-dir", f.dir,
                             "The server's state directory (as root: /var/lib/corral)")
                 ->capture_default_str();
}

}  // namespace

Runner RegisterKubeconfig(CLI::App& app) {
  auto f = std::make_shared<DataDirFlag>();
  CLI::App* sub = app.add_subcommand("kubeconfig", "Print the admin kubeconfig of a server");
  AddDataDir(sub, *f);
  return [f] {
    const std::string path = f->Resolve() + "/admin.kubeconfig";
    std::ifstream in(path);
    if (!in) {
      std::cerr << "corral kubeconfig: cannot read " << path
                << " (start `corral server` with this --data-dir first)\n";
      return 1;
    }
    std::cout << in.rdbuf();
    return 0;
  };
}

Runner RegisterToken(CLI::App& app) {
  struct Flags {
    DataDirFlag data_dir;
    std::string token_file;
    std::string user;
    std::string role = "viewer";
  };
  auto f = std::make_shared<Flags>();
  CLI::App* token = app.add_subcommand("token", "Manage API bearer tokens");
  CLI::App* add = token->add_subcommand("add", "Add a token and print it");
  token->require_subcommand(1);
  AddDataDir(add, f->data_dir);
  add->add_option("--token-file", f->token_file, "Token file (default: <data-dir>/tokens.csv)");
  add->add_option("--user", f->user, "User name (a worker's node name for role node)")->required();
  add->add_option("--role", f->role, "admin|viewer|node")
      ->check(CLI::IsMember({"admin", "viewer", "node"}))
      ->capture_default_str();
  return [f] {
    const std::string file =
        f->token_file.empty() ? f->data_dir.Resolve() + "/tokens.csv" : f->token_file;
    const api::Role role = f->role == "admin"  ? api::Role::kAdmin
                           : f->role == "node" ? api::Role::kNode
                                               : api::Role::kViewer;
    auto t = api::AddToken(file, f->user, role);
    if (!t.ok()) {
      std::cerr << "corral token add: " << t.status().ToString() << "\n";
      return 1;
    }
    std::cout << *t << "\n";
    return 0;
  };
}

}  // namespace corral::cmd

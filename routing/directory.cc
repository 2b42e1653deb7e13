#include "routing/directory.h"

namespace postern {

const char* DirectoryRequest::MechanismName(Mechanism m) {
  // nginx's Auth-Method values (ngx_mail_auth_http_module.c), plus ours.
  switch (m) {
    case Mechanism::kPlain:
      return "plain";
    case Mechanism::kLogin:
      return "login";
    case Mechanism::kXoauth2:
      return "xoauth2";
    case Mechanism::kOauthbearer:
      return "oauthbearer";
  }
  return "plain";
}

}  // namespace postern

#include "server/provider_impl.hpp"

namespace yokan {

// Lets a client check that a Yokan provider has this id (make_database_handle(check=True)).
void ProviderImpl::handle_identify(RequestPtr req) { req->respond(Status::YOKAN_SUCCESS, "yokan"); }

}  // namespace yokan

// RFC 9457 problem details: the body of every error the middleware answers.
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "idem/integrations/http.h"

namespace idem::http {

std::string Problem::to_json(std::string_view type_base) const {
  // ordered_json: members in the order of the RFC, which is how people read
  // them in a terminal.
  nlohmann::ordered_json doc;
  const bool absolute = type.find(':') != std::string::npos;
  doc["type"] = type.empty() ? std::string("about:blank") : absolute ? type : std::string(type_base) + type;
  doc["title"] = title;
  doc["status"] = status;
  if (!detail.empty()) doc["detail"] = detail;
  for (const auto& [name, value] : extensions) {
    if (!doc.contains(name)) doc[name] = value;
  }
  // Replace rather than throw on invalid UTF-8: details can quote client input.
  return doc.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Problem invalid_request(std::string detail) {
  return Problem{.status = 400,
                 .type = std::string(problem::kInvalidRequest),
                 .title = "The request is invalid",
                 .detail = std::move(detail),
                 .extensions = {}};
}

void write_problem(httplib::Response& response, const Problem& problem, std::string_view type_base) {
  response.status = problem.status;
  response.set_content(problem.to_json(type_base), std::string(kProblemContentType));
}

}  // namespace idem::http

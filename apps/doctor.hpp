// `troupe doctor URL...`: see doctor.cpp.
#pragma once
#include <string>

#include "troupe/engine/diagnosis.hpp"

namespace troupe::apps {
int run_doctor(int argc, char** argv);
// The human report of a diagnosis (doctor_report.cpp).
std::string format_diagnosis_report(const diagnosis& d);
}

#include "data/parquet/rows.h"
#include <functional>

#include "core/error.h"
#include "data/parquet/leaf.h"
#include "data/parquet/reader.h"

namespace tl::parquet {

namespace {

constexpr int kMaxDepth = 16;

// The schema as a tree (the footer stores it depth-first with child counts).
struct SchemaNode {
  const SchemaElement* e = nullptr;
  std::vector<SchemaNode> children;
};

SchemaNode build_tree(const std::vector<SchemaElement>& schema, size_t& i, int depth,
                      const std::string& path) {
  TL_CHECK(i < schema.size(), "parquet '", path, "': corrupt schema: children past its end");
  TL_CHECK(depth <= kMaxDepth, "parquet '", path, "': schema nests deeper than ", kMaxDepth);
  SchemaNode n;
  n.e = &schema[i++];
  TL_CHECK(n.e->num_children >= 0 && size_t(n.e->num_children) <= schema.size() - i, "parquet '",
           path, "': corrupt schema: '", n.e->name, "' claims ", n.e->num_children, " children");
  for (int32_t c = 0; c < n.e->num_children; ++c)
    n.children.push_back(build_tree(schema, i, depth + 1, path));
  return n;
}

bool is_primitive(const SchemaNode& n) { return n.children.empty() && n.e->type.has_value(); }

}  // namespace

struct RowReader::Node {
  enum Kind { Scalar, List, Struct } kind = Scalar;
  std::string name;
  size_t leaf = 0;  // Scalar, List: index into leaves_
  PhysicalType type = PhysicalType::ByteArray;
  int exists_def = 0;                         // this value is not null when def >= exists_def
  int elem_def = 0;                           // List: an entry is an element when def >= elem_def
  std::vector<std::unique_ptr<Node>> fields;  // Struct
};

namespace {

// Definition/repetition levels below a node: what its own repetition adds.
int def_of(const SchemaElement& e, int parent) {
  return parent + (e.repetition != Repetition::Required);
}
int rep_of(const SchemaElement& e, int parent) {
  return parent + (e.repetition == Repetition::Repeated);
}

}  // namespace

RowReader::RowReader(const std::string& path, const std::vector<std::string>& columns)
    : file_(std::make_unique<ParquetFile>(path)) {
  const auto& schema = file_->metadata().schema;
  TL_CHECK(!schema.empty(), "parquet '", path, "': corrupt schema: no root");
  size_t i = 0;
  const SchemaNode root = build_tree(schema, i, 0, path);
  // shape(): the Node for schema node n whose parent sits at (def, rep), path so far.
  std::function<std::unique_ptr<Node>(const SchemaNode&, int, int, std::vector<std::string>)> shape;
  auto leaf = [&](const SchemaNode& n, std::vector<std::string> p, int def, int rep) {
    leaves_.push_back(std::make_unique<LeafReader>(*file_, std::move(p), *n.e->type, def, rep));
    return leaves_.size() - 1;
  };
  shape = [&](const SchemaNode& n, int pdef, int prep, std::vector<std::string> p) {
    auto node = std::make_unique<Node>();
    node->name = n.e->name;
    p.push_back(n.e->name);
    const int def = def_of(*n.e, pdef), rep = rep_of(*n.e, prep);
    std::string dotted;
    for (const auto& s : p) dotted += (dotted.empty() ? "" : ".") + s;
    if (is_primitive(n)) {
      node->type = *n.e->type;
      if (n.e->repetition == Repetition::Repeated) {  // a bare repeated field: a list
        TL_CHECK(prep == 0, "parquet '", path, "': column '", dotted, "' is a list inside a list");
        node->kind = Node::List;
        node->exists_def = pdef;
        node->elem_def = def;
      } else {
        node->exists_def = def;
      }
      node->leaf = leaf(n, p, def, rep);
      return node;
    }
    TL_CHECK(n.e->repetition != Repetition::Repeated, "parquet '", path, "': column '", dotted,
             "' is a repeated group (a list of structs), which is not supported");
    node->exists_def = def;
    if (n.children.size() == 1 && n.children[0].e->repetition == Repetition::Repeated) {
      TL_CHECK(prep == 0, "parquet '", path, "': column '", dotted, "' is a list inside a list");
      const SchemaNode& r = n.children[0];
      node->kind = Node::List;
      node->elem_def = def + 1;
      p.push_back(r.e->name);
      if (is_primitive(r)) {  // 2-level: group { repeated <type> element }
        node->type = *r.e->type;
        node->leaf = leaf(r, p, def + 1, rep + 1);
        return node;
      }
      TL_CHECK(r.children.size() == 1 && is_primitive(r.children[0]) &&
                   r.children[0].e->repetition != Repetition::Repeated,
               "parquet '", path, "': column '", dotted,
               "' is a list of structs or lists, which is not supported");
      const SchemaNode& el = r.children[0];  // 3-level: group { repeated group list { element } }
      p.push_back(el.e->name);
      node->type = *el.e->type;
      node->leaf = leaf(el, p, def_of(*el.e, def + 1), rep + 1);
      return node;
    }
    node->kind = Node::Struct;
    for (const SchemaNode& c : n.children) node->fields.push_back(shape(c, def, rep, p));
    return node;
  };
  for (const std::string& name : columns) {
    const SchemaNode* found = nullptr;
    for (const SchemaNode& c : root.children)
      if (c.e->name == name) found = &c;
    if (!found) {
      std::string list;
      for (const SchemaNode& c : root.children) list += (list.empty() ? "" : ", ") + c.e->name;
      fail("parquet '", path, "': no column '", name, "' (its columns: ", list, ")");
    }
    columns_.push_back(shape(*found, 0, 0, {}));
  }
  lookahead_.resize(leaves_.size());
  has_lookahead_.assign(leaves_.size(), false);
  for (size_t k = 0; k < leaves_.size(); ++k) {
    lookahead_[k] = std::make_unique<LeafEntry>();
    has_lookahead_[k] = leaves_[k]->next(*lookahead_[k]);
  }
}

RowReader::~RowReader() = default;

int64_t RowReader::num_rows() const { return file_->num_rows(); }

bool RowReader::next(json& row) {
  bool any = false, all = true;
  for (bool h : has_lookahead_) any = any || h, all = all && h;
  if (!any) {
    TL_CHECK(rows_ == file_->num_rows(), "parquet '", file_->path(),
             "': corrupt: the columns hold ", rows_, " rows, the footer says ", file_->num_rows());
    return false;
  }
  TL_CHECK(all, "parquet '", file_->path(), "': corrupt: the columns end at different rows (row ",
           rows_, ")");
  TL_CHECK(rows_ < file_->num_rows(), "parquet '", file_->path(), "': corrupt: more rows than the ",
           file_->num_rows(), " of the footer");
  // This row's entries of every leaf: the lookahead, then entries until the next row's.
  std::vector<std::vector<LeafEntry>> entries(leaves_.size());
  for (size_t k = 0; k < leaves_.size(); ++k) {
    TL_CHECK(lookahead_[k]->rep == 0, "parquet '", file_->path(), "': corrupt: column '",
             leaves_[k]->name(), "' row ", rows_, " starts inside a list");
    entries[k].push_back(*lookahead_[k]);
    for (;;) {
      has_lookahead_[k] = leaves_[k]->next(*lookahead_[k]);
      if (!has_lookahead_[k] || lookahead_[k]->rep == 0) break;
      entries[k].push_back(*lookahead_[k]);
    }
  }
  auto scalar = [](const Node& n, const LeafEntry& e) -> json {
    if (!e.present) return nullptr;
    if (n.type == PhysicalType::ByteArray) return e.s;
    if (n.type == PhysicalType::Boolean) return e.i != 0;
    return e.i;
  };
  std::function<json(const Node&)> value = [&](const Node& n) -> json {
    if (n.kind == Node::Struct) {
      json obj = json::object();
      for (const auto& f : n.fields) obj[f->name] = value(*f);
      return obj;
    }
    const auto& es = entries[n.leaf];
    if (n.kind == Node::Scalar) return scalar(n, es[0]);
    if (es[0].def < n.exists_def) return nullptr;
    json arr = json::array();
    if (es.size() == 1 && es[0].def < n.elem_def) return arr;  // an empty list
    for (const LeafEntry& e : es) arr.push_back(scalar(n, e));
    return arr;
  };
  row = json::object();
  for (const auto& c : columns_) {
    json v = value(*c);
    // A struct whose leaves all say "not defined here" is a null struct.
    if (c->kind == Node::Struct) {
      bool null = true;
      std::function<void(const Node&)> walk = [&](const Node& n) {
        if (n.kind == Node::Struct)
          for (const auto& f : n.fields) walk(*f);
        else
          null = null && entries[n.leaf][0].def < c->exists_def;
      };
      walk(*c);
      if (null) v = nullptr;
    }
    row[c->name] = std::move(v);
  }
  ++rows_;
  return true;
}

}  // namespace tl::parquet

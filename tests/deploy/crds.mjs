// Validates the custom resources of the given YAML files against the CRD
// schemas KEDA and the Prometheus Operator publish (as packaged by
// kubernetes-models): ScaledObject and ServiceMonitor. Prints a JSON
// report; exits 1 naming the file and the field when one does not match.
//   node crds.mjs deploy/kubernetes/scaledobject.yaml ...
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = {
  "keda.sh/v1alpha1 ScaledObject": ScaledObject,
  "monitoring.coreos.com/v1 ServiceMonitor": ServiceMonitor,
};
const checked = [];
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const resource = doc.toJS();
    const kind = `${resource.apiVersion} ${resource.kind}`;
    const Model = models[kind];
    if (!Model) {
      console.error(`${file}: no CRD schema here for ${kind}`);
      process.exit(1);
    }
    try {
      new Model(resource).validate();
    } catch (error) {
      console.error(`${file}: ${kind} ${resource.metadata?.name}: ${error.message}`);
      process.exit(1);
    }
    checked.push({ file, kind, name: resource.metadata?.name });
  }
}
console.log(JSON.stringify({ checked }));

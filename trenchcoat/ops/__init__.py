"""The operator's tools: the `trenchcoat` command (cli, admin verbs, top), the local
launcher and demo, the dashboard and k8s generators, the CDN runner, and the process
management they share. No service process imports these; they import the libraries."""

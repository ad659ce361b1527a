#!/usr/bin/env node
// Runs the compiled CLI (npm install builds dist/).
import '../dist/proxy/cli.js';

import { dropoutMatrix } from './matrix.js';

dropoutMatrix('unmask');
